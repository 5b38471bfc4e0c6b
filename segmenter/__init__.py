# Before any module of the compiled build is imported: source or compiled (segmenter/native.py).
# segmenter.native imports nothing of the project. It lives here, in the bottom layer, so that
# gateway (whose __init__ does the same) depends on segmenter and never the reverse.
from segmenter import native

native.select()
