# Before any module of the compiled build is imported: source or compiled (segmenter/native.py).
from segmenter import native

native.select()
