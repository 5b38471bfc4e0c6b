"""Benchmarks for the RTMP->HLS gateway (issue 6): ``python -m bench <scenario>``.

See bench/README.md.
"""
