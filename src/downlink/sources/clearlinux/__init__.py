"""Clear Linux telemetry: the clr-telemetry client's records and their dashboards."""
