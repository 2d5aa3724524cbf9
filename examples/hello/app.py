"""The smallest faasbox function: greet whoever the event names."""


def handler(event, context):
    name = (event or {}).get("name", "world")
    print(f"Saying hello to {name} from {context.function_name}")
    return {"message": f"Hello, {name}!"}
