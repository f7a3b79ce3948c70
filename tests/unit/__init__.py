"""Pure-logic tests: no root, no kernel."""
