"""What every package of sdbot may import: it imports nothing of ours."""
