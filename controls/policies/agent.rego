# The shipped agent policy in Rego: the same rules and ids as agent_rules.yaml (and agent.cedar).
# Default deny; any matching deny overrides every permit. `decision` is what the simulator asks
# for: {"allow": bool, "reasons": [ids of the rules that decided]}, so reasons compare across
# engines. Input layout (simharness.policy.rego): flat fields, the rules attribute `a.b` is
# `input.a_b`. The burst window is stateful: the simulator counts it in Python with the
# parameters in `rate_limits` and passes `input.rate_exceeded`.
package simharness.agent

import rego.v1

rate_limits := {"forbid-burst": {"key": "identity", "window": "10s", "gt": 20}}

# An attested workload acting within its role and its task's declared scope.
permit contains "permit-planned-action" if {
	input.attested == true
	input.entitled == true
	input.in_scope == true
	input.task_active == true
}

deny contains "forbid-unapproved-destination" if input.resource_approved == false

deny contains "forbid-bulk-egress" if {
	input.resource_external == true
	input.bytes_out > 1000000
}

# A delegate may not do, off its sub-task's plan, what the chain's origin may not (confused
# deputy); planned hand-offs such as billing writing the ledger for support stay allowed.
deny contains "forbid-beyond-origin" if {
	input.chain_depth >= 1
	input.chain_origin_permits == false
	input.in_scope == false
}

# A token presented by someone other than its holder (passthrough, theft).
deny contains "forbid-foreign-token" if {
	input.token_present == true
	input.token_holder_matches == false
}

# A call that names a recipient the task did not declare when it began.
deny contains "forbid-unknown-recipient" if input.args_known.recipient == false

# More than 20 requests in 10 s from one identity.
deny contains "forbid-burst" if input.rate_exceeded == true

default decision := {"allow": false, "reasons": ["default-deny"]}

decision := {"allow": false, "reasons": sort(deny)} if count(deny) > 0

decision := {"allow": true, "reasons": sort(permit)} if {
	count(deny) == 0
	count(permit) > 0
}
