"""The JSON Schemas of the device messages (PROTOCOL section 4) as package data, so that an installed
server and the conformance kit validate against them. One source: in the source tree every file here is
a symbolic link to docs/schemas/ (what the documentation links to); building a wheel copies the files
themselves. tests/server/test_wire_validation.py checks that both name the same files."""
