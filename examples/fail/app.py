"""A failing function: raises, so the caller gets Lambda's error object and the
X-Amz-Function-Error header (and `faasbox invoke` exits 1)."""


class PaymentDeclined(Exception):
    pass


def handler(event, context):
    amount = (event or {}).get("amount", 42)
    print(f"charging {amount}")
    raise PaymentDeclined(f"card declined for amount {amount}")
