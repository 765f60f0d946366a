"""The ledger run by many validators: pykoii's state machine as a CometBFT (ABCI 2.0) application.

``abci`` is the socket server, ``app`` the ABCI methods, ``store`` the block-driven ``LedgerStore``,
``engine`` the CometBFT binary, folders, config and genesis, ``validator`` the process that runs one
validator, ``network`` N of them on one machine. See docs/validators.md.
"""
