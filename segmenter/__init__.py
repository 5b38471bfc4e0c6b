# Before any module of the compiled build is imported: source or compiled (gateway/native.py).
# gateway.native imports nothing of the project, so this adds no cycle.
from gateway import native

native.select()
