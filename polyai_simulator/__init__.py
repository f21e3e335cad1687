"""A local, PolyAI-compatible simulator of the Conversations list endpoint (127.0.0.1 only)."""

from .clock import SimClock
from .config import SimConfig
from .faults import Faults
from .server import SimulatorServer
from .simulator import Simulator

__all__ = ["Faults", "SimClock", "SimConfig", "Simulator", "SimulatorServer"]
