"""Accounts: what signed-in users manage for themselves, such as their API tokens."""
