"""MNS errors: exception classes that render MNS's own XML error body.

Body (doc 27500/27501)::

    <Error xmlns="http://mns.aliyuncs.com/doc/v1/"><Code/><Message/><RequestId/><HostId/></Error>

All four elements are always present: aliyun-mns-sdk's ``ErrorDecoder`` raises ``RespDataDamaged``
instead of ``MNSServerException`` when one is missing. Messages are MNS's own wording where the
error-code page gives one.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

XMLNS = "http://mns.aliyuncs.com/doc/v1/"


class MnsError(Exception):
    """One refused MNS call; ``status`` and ``code`` are what the client sees."""

    status = 400
    code = "InternalError"
    default_message = "Internal error."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    def render(self, request_id: str, host_id: str) -> bytes:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<Error xmlns="{XMLNS}">'
            f"<Code>{escape(self.code)}</Code>"
            f"<Message>{escape(self.message)}</Message>"
            f"<RequestId>{escape(request_id)}</RequestId>"
            f"<HostId>{escape(host_id)}</HostId>"
            "</Error>"
        ).encode()


class MissingAuthorizationHeader(MnsError):
    code = "MissingAuthorizationHeader"
    default_message = "Authorization header is required."


class InvalidAuthorizationHeader(MnsError):
    code = "InvalidAuthorizationHeader"
    default_message = "The Authorization header format is invalid."


class MissingDateHeader(MnsError):
    code = "MissingDateHeader"
    default_message = "Date header is required."


class InvalidDateHeader(MnsError):
    code = "InvalidDateHeader"
    default_message = "The Date header format is invalid."


class MissingVersionHeader(MnsError):
    code = "MissingVersionHeader"
    default_message = "Version header is required."


class TimeExpired(MnsError):
    status = 408
    code = "TimeExpired"
    default_message = "The http request you sent is expired."


class InvalidAccessKeyId(MnsError):
    status = 403
    code = "InvalidAccessKeyId"
    default_message = "The AccessKey Id you provided is not exist."


class SignatureDoesNotMatch(MnsError):
    status = 403
    code = "SignatureDoesNotMatch"
    default_message = (
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method."
    )


class InvalidSecurityToken(MnsError):
    status = 403
    code = "InvalidSecurityToken"
    default_message = "The security token you provided is invalid."


class SecurityTokenExpired(MnsError):
    status = 403
    code = "SecurityTokenExpired"
    default_message = "The security token you provided has expired."


class AccessDenied(MnsError):
    """403 AccessDenied: MNS's code for a refused principal (the error-code table above), RAM denials included."""

    status = 403
    code = "AccessDenied"
    default_message = "The OwnerId that your Access Key Id associated to is forbidden for this operation."
    # Assumption: the wording of a RAM denial. The code and status are documented; no public page
    # quotes the message, so this one names what was refused, as FC's and the OpenAPI gateway's do.
    RAM_MESSAGE = "You are not authorized to do this action. Action: {action}, Resource: {resource}."


class InvalidDigest(MnsError):
    code = "InvalidDegist"  # sic: MNS's own spelling
    default_message = "The Content-MD5 you specified is invalid."


class InvalidRequestURL(MnsError):
    code = "InvalidRequestURL"
    default_message = "Http request URL format invalid."


class InvalidArgument(MnsError):
    code = "InvalidArgument"
    default_message = "The argument you provided is invalid."


class MalformedXML(MnsError):
    code = "MalformedXML"
    default_message = "The XML you provided was not well-formed."


class ReceiptHandleError(MnsError):
    code = "ReceiptHandleError"
    default_message = "The receipt handle you provide is not valid."


class TopicNotExist(MnsError):
    status = 404
    code = "TopicNotExist"
    default_message = "The topic you provided does not exist."


class QueueNotExist(MnsError):
    status = 404
    code = "QueueNotExist"
    default_message = "The queue you provided does not exist."


class MessageNotExist(MnsError):
    status = 404
    code = "MessageNotExist"
    default_message = "Message not exist."


class TooManyRequests(MnsError):
    """MNS's flow limiter (developer-reference/flow-limiting-policy): 429, its only throttling code."""

    status = 429
    code = "TooManyRequests"
    default_message = "The request is denied by cluster flow limiter for too many requests."


class InternalError(MnsError):
    status = 500
    code = "InternalError"
    default_message = "Internal error."


class NotEmulated(MnsError):
    """A real MNS operation localcloud does not emulate (queues and topics come from the seed)."""

    status = 501
    code = "NotImplemented"
    default_message = "localcloud does not emulate this MNS operation."
