"""What every service agrees on: event schemas, the envelope that carries them, topology names.

Pure pydantic: nothing here talks to a broker, a database or the network.
"""
