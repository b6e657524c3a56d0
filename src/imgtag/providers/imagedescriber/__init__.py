"""The hosted tag API (imagedescriber.app): one POST per image, answered with tags, a title and a description,
billed in credits. `provider.py` is the wire, `errors.py` maps its error codes onto the engine's outcomes,
`fields.py` maps its answer onto presets (and refuses the ones it cannot fill), `encode.py` fits images
into what it accepts."""
