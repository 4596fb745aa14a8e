"""The exchange EXECUTE trades on: one interface, a paper and a Binance (ccxt) implementation."""
