"""Watching served traffic: capture of answered requests, their flush to storage, drift checks, monitors."""
