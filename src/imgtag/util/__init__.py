"""Small helpers every layer uses, each importing nothing of imgtag: money and counts as people read them
(money.py, words.py), URLs fit to show (urls.py), and a module imported on first use (lazy.py)."""
