"""myqtt.sasl: SASL authentication (PLAIN and more) for CONNECT and MQTT 5
enhanced authentication.

Its functions arrive with the SASL work; the module is importable now so
programs can already ``import myqtt.sasl``.
"""

__all__: list[str] = []
