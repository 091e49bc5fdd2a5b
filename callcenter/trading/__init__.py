"""The trading back-end: accounts, A-share order rules, the simulated exchange, market data, alerts, audit."""
