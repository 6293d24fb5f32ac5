"""The Python side of the C runtime: host library loader, engine and runtime bindings, frames."""
