"""Talking to the PolyAI API: requests, retries and pacing, paging, windows read side by side."""
