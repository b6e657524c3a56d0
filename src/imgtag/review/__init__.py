"""`imgtag review`: a local page where a person checks, edits and approves what the model wrote.

- fields.py: what each field of the preset's schema allows (for the page's editors and for checks)
- ops.py: the bulk operations on one value (add/remove/rename a tag, set, find/replace)
- query.py: the list's filters as SQL over current values
- service.py: reads and writes of review state (single edits, bulk, undo, history, retry queue)
- server.py: the JSON API and the page (Starlette), with its security rules; serve.py runs it (uvicorn)

The review tables live in the store (store/review.py); exports only ever read current values from there.
"""
