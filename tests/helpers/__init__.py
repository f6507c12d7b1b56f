"""Library code the tests share: servers on free ports, databases, tokens, seeded rows.

Fixtures built on it are pytest plugins in tests/fixtures/, named in tests/conftest.py.
"""
