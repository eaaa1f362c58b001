"""An example third-party harness plugin: one block, `ghost`, registered through the entry point."""
