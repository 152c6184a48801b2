"""Images as they arrive and as they are kept: ``decode`` turns a request's base64, upload or crop
box into bounded bytes, ``download`` fetches an image URL within the process's download bound
(the fetch itself is :mod:`api.services.fetch`), ``storage`` keeps uploaded photos by content hash."""
