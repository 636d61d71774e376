#!/usr/bin/env python3
"""Signs Code Storage tokens with an AWS KMS key, for git-credential-codestorage's sign_command.

  aws-kms-sign.py KEY_ID                 one-shot: signs stdin (ES256), prints base64 DER
  aws-kms-sign.py --rs256 KEY_ID         one-shot with an RSA key (RS256)
  aws-kms-sign.py --persistent KEY_ID    kept running (sign_persistent = true): JSON lines
  aws-kms-sign.py --public-key KEY_ID    prints the key's public half as PUBLIC KEY PEM

KEY_ID is a key ID, ARN or alias/NAME. The key is ECC_NIST_P256 (ES256) or RSA_2048 and up
(RS256), usage SIGN_VERIFY; the broker's role needs kms:Sign and kms:GetPublicKey on it and
nothing else. Credentials, region and endpoint come from boto3's usual sources (AWS_PROFILE,
instance roles, AWS_REGION, AWS_ENDPOINT_URL). Needs boto3 (pip install boto3).
"""
import base64
import json
import sys

import boto3

ALGORITHMS = {"ES256": "ECDSA_SHA_256", "RS256": "RSASSA_PKCS1_V1_5_SHA_256"}


def sign(kms, key_id, alg, message):
    """The DER (ECDSA) or PKCS#1 (RSA) signature of message, as KMS returns it."""
    answer = kms.sign(KeyId=key_id, Message=message, MessageType="RAW",
                      SigningAlgorithm=ALGORITHMS[alg])
    return answer["Signature"]


def public_key_pem(kms, key_id):
    der = kms.get_public_key(KeyId=key_id)["PublicKey"]
    text = base64.b64encode(der).decode()
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"


def one_line(error):
    return " ".join(str(error).split())[:300]


def persistent(kms, key_id):
    """Greets, then answers one request line with one answer line until stdin closes."""
    print(json.dumps({"v": [1]}), flush=True)
    for line in sys.stdin:
        try:
            request = json.loads(line)
            if request.get("v") != 1:
                raise ValueError("unsupported protocol version %r" % request.get("v"))
            alg = request["alg"]
            if alg not in ALGORITHMS:
                raise ValueError("unsupported algorithm %r" % alg)
            data = request["input"]
            message = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
            signature = sign(kms, key_id, alg, message)
            answer = {"signature": base64.b64encode(signature).decode()}
        except Exception as error:  # every failure is an answer, never a dead signer
            answer = {"error": "AWS KMS %s: %s" % (key_id, one_line(error))}
        print(json.dumps(answer), flush=True)


def main(argv):
    if len(argv) == 2 and not argv[1].startswith("-"):
        mode, key_id = "ES256", argv[1]
    elif len(argv) == 3 and argv[1] in ("--persistent", "--public-key", "--rs256"):
        mode, key_id = argv[1], argv[2]
    else:
        sys.stderr.write(__doc__)
        return 2
    kms = boto3.client("kms")
    if mode == "--public-key":
        sys.stdout.write(public_key_pem(kms, key_id))
    elif mode == "--persistent":
        persistent(kms, key_id)
    else:
        # One KMS call per token: the algorithm comes from the arguments, not from the key.
        alg = "RS256" if mode == "--rs256" else "ES256"
        print(base64.b64encode(sign(kms, key_id, alg, sys.stdin.buffer.read())).decode())
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Exception as error:
        sys.stderr.write("aws-kms-sign: %s\n" % one_line(error))
        sys.exit(1)
