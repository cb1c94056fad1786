"""myqtt.tls: TLS for listeners and connections (PyMyQtt's ``myqtt.tls``).

Its functions (``accept_tls``, ``is_enabled``...) arrive with the TLS work;
the module is importable now so programs can already ``import myqtt.tls``.
"""

__all__: list[str] = []
