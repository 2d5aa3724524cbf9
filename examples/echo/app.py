"""An HTTP-style function: takes an API Gateway HTTP API (v2) event, answers a v2
response that echoes the request back, as it would behind a Lambda function URL."""

import base64
import json


def handler(event, context):
    event = event or {}
    http = event.get("requestContext", {}).get("http", {})
    body = event.get("body")
    if body and event.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("utf-8", "replace")
    print(f"{http.get('method', 'GET')} {event.get('rawPath', '/')}")
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(
            {
                "method": http.get("method", "GET"),
                "path": event.get("rawPath", "/"),
                "query": event.get("queryStringParameters") or {},
                "body": body,
                "request_id": context.aws_request_id,
            }
        ),
    }
