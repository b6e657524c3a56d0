"""Small helpers several layers use, each importing nothing of imgtag: money and counts as people read them
(money.py, words.py) and URLs fit to show (urls.py)."""
