"""The boot path: what booting nodes (iPXE, cloud-init) talk to.

`create_app()` (hotpath.app) builds one worker's application; the compiled
core lives in `_render` and `_dispatch`, their pure-Python twins in
`_render_py` and `_dispatch_py` serve the tests only.
"""
