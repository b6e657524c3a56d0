"""What a run is told, below every stage: the run's configuration and target (runconfig.py), imgtag.toml read and
checked key by key (tomlfile.py), the one exception hierarchy (errors.py) and the exit codes (exits.py).

The stages import these modules; these modules import no stage (only its types, for type checkers). Deciding
settings (flags > environment > imgtag.toml) is app/settings.py's job. Nothing is imported here, so naming one
module loads only that one (a configuration error is reported before anything heavy loads, bench/startup.py).
"""
