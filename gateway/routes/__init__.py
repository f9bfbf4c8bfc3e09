"""Thin Litestar controllers: decode, call one function, return a Struct."""
