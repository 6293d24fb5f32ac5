"""The dashboard page (static HTML served at /)."""
