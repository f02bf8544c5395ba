# The shipped agent policy in Rego: the same rules and ids as agent_rules.yaml (and agent.cedar).
# Default deny; any matching deny overrides every allow. `decision.reasons` holds the ids of the
# rules that decided, so reasons compare across engines. The burst window is stateful: the
# simulator counts it in Python (RateWindow, parameters in `rate_limits`) and passes
# `input.rate_exceeded`. Input layout: simharness.policy.rego.request_input.
package simharness.agent

import rego.v1

rate_limits := {"forbid-burst": {"key": "identity", "window": "10s", "gt": 20}}

permit contains "permit-planned-action" if {
	input.attested == true
	input.entitled == true
	input.in_scope == true
	input.task.active == true
}

deny contains "forbid-unapproved-destination" if input.resource.approved == false

deny contains "forbid-bulk-egress" if {
	input.resource.external == true
	input.bytes_out > 1000000
}

# A delegate may not do what the chain's origin may not (confused deputy).
deny contains "forbid-beyond-origin" if {
	input.chain.depth >= 1
	input.chain.origin_permits == false
}

# A token presented by someone other than its holder (passthrough, theft).
deny contains "forbid-foreign-token" if {
	input.token.present == true
	input.token.holder_matches == false
}

# More than 20 requests in 10 s from one identity.
deny contains "forbid-burst" if input.rate_exceeded == true

default decision := {"allow": false, "reasons": ["default-deny"]}

decision := {"allow": false, "reasons": sort(deny)} if count(deny) > 0

decision := {"allow": true, "reasons": sort(permit)} if {
	count(deny) == 0
	count(permit) > 0
}
