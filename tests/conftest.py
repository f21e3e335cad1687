"""The shared fixtures, as plugins: simulators and harnesses, and the warehouses to load into."""

pytest_plugins = ["tests.support.fixtures", "tests.support.warehouses", "tests.support.regions"]
