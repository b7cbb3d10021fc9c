"""The OONI source: probe submissions, fastpath scoring, measurements API and views."""
