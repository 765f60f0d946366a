"""The node: runs tasks round after round for an operator (see docs/node.md)."""
