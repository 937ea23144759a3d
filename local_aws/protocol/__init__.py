"""The AWS wire protocols, driven by botocore's service models (the specification).

* :mod:`.api`: how a service declares its API and operations.
* :mod:`.routing`: the operation a request calls (``X-Amz-Target``, or method + requestUri).
* :mod:`.parsing`: the request -> one dict shaped like the input shape.
* :mod:`.validation` (+ :mod:`.patterns`): that dict against the input shape, in AWS's words.
* :mod:`.serializing`: the handler's dict -> the response the output shape describes.
* :mod:`.errors`: AwsError and its wire shape per protocol.
* :mod:`.server`: the WSGI app and server; local_aws's services or moto behind it.
"""
