"""A local, PolyAI-compatible simulator of the Conversations list endpoint (localhost only)."""

from .clock import SimClock
from .faults import Faults
from .server import SimulatorServer
from .simulator import SimConfig, Simulator

__all__ = ["Faults", "SimClock", "SimConfig", "Simulator", "SimulatorServer"]
