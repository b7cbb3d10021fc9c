"""Server-rendered pages with charts; every page has a JSON twin."""
