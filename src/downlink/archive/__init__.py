"""The raw archive: committed rows kept in compressed files, local or S3-compatible.

``storage`` (a directory or a bucket), ``days`` (any source's rows as gzipped NDJSON by
UTC day) and ``replay`` (a range of archived rows through the source's consumers).
"""
