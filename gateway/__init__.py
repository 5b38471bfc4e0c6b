# Before any module of the compiled build is imported: source or compiled (gateway/native.py).
from gateway import native

native.select()
