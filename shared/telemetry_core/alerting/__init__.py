"""Alert evaluation shared by the alert engine and the gateway's backtest: pure code, no I/O."""
