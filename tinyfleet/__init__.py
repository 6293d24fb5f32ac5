"""tinyfleet: ship compressed TinyML models to fleets of microcontrollers."""

__version__ = "0.1.0"
