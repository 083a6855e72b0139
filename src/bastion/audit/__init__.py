"""Tamper-evident audit log: an RFC 6962 Merkle tree over JSON records, with signed checkpoints.

log = open_log()                      # <state dir>/audit.sqlite3, key gateway-audit.key
index = await log.append({"tenant": "acme", "decision": "allow", ...})
log.checkpoint(); log.verify().ok
"""

from bastion.audit.checkpoint import SignedCheckpoint
from bastion.audit.errors import AuditRecordError, AuditTampered, AuditUnavailable
from bastion.audit.log import AuditLog, ConsistencyProof, InclusionProof, open_log
from bastion.audit.merkle import leaf_hash, node_hash, verify_consistency, verify_inclusion
from bastion.audit.records import canonical_json
from bastion.audit.verify import VerifyResult

__all__ = [
    "AuditLog",
    "AuditRecordError",
    "AuditTampered",
    "AuditUnavailable",
    "ConsistencyProof",
    "InclusionProof",
    "SignedCheckpoint",
    "VerifyResult",
    "canonical_json",
    "leaf_hash",
    "node_hash",
    "open_log",
    "verify_consistency",
    "verify_inclusion",
]
