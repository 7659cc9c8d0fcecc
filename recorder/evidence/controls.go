package evidence

// Section identifiers: the HTML element ids of the report's sections, in
// reading order, which the appendix refers to.
const (
	SectionCover      = "cover"
	SectionSummary    = "summary"
	SectionIdentities = "identities"
	SectionGrants     = "grants"
	SectionSessions   = "sessions"
	SectionTimeline   = "timeline"
	SectionCustody    = "custody"
	SectionControls   = "controls"
)

// Sections lists every section id with its heading, in reading order.
var Sections = []struct{ ID, Title string }{
	{SectionCover, "1. Cover and integrity statement"},
	{SectionSummary, "2. Summary"},
	{SectionIdentities, "3. Privileged identity inventory"},
	{SectionGrants, "4. Grants and approvals"},
	{SectionSessions, "5. Session activity"},
	{SectionTimeline, "6. Timeline of access"},
	{SectionCustody, "7. Integrity and custody"},
	{SectionControls, "8. Appendix: controls"},
}

// Controls is the appendix: which section answers which control. The
// sentences say what the report shows, not that a control is met: that
// is the examiner's judgement.
func Controls() []Control {
	return []Control{
		{"NIST SP 800-53 Rev. 5", "AC-2", "Account Management", []string{SectionIdentities, SectionGrants},
			"Lists every identity that held privileged access in the period, with its identity provider, sponsor and certificates, and every grant with its requester, approvers, window and how it ended."},
		{"NIST SP 800-53 Rev. 5", "AC-6(9)", "Least Privilege | Log Use of Privileged Functions", []string{SectionSessions},
			"Every privileged session is recorded at the bastion: exec commands exactly, interactive command lines reconstructed from keystrokes, with outcome."},
		{"NIST SP 800-53 Rev. 5", "AU-2", "Event Logging", []string{SectionSummary, SectionSessions, SectionCustody},
			"Shows the events the bastion logs: certificate issuance and revocation, grant decisions, sessions, refused actions, policy loads, and the bastion's starts and stops."},
		{"NIST SP 800-53 Rev. 5", "AU-3", "Content of Audit Records", []string{SectionSessions},
			"Each session and refusal shows what happened, when (UTC), where from (client address), where to (target and login), who (identity, certificate serial) and the outcome."},
		{"NIST SP 800-53 Rev. 5", "AU-6", "Audit Record Review, Analysis, and Reporting", []string{SectionSummary, SectionTimeline},
			"This report is a review product: the summary lists the exceptions found (refusals, broken or unterminated sessions, access past a grant, standing access, unclean stops) and the open items."},
		{"NIST SP 800-53 Rev. 5", "AU-9(3)", "Protection of Audit Information | Cryptographic Protection", []string{SectionCover, SectionCustody},
			"Records are hash-chained and committed to an RFC 6962 Merkle tree whose checkpoints are signed with the journal's Ed25519 key; the full verification result and the command to repeat it are given."},
		{"NIST SP 800-53 Rev. 5", "AU-10", "Non-repudiation", []string{SectionIdentities, SectionSessions, SectionCover},
			"Each action is bound to one identity through a certificate whose serial is the journal leaf that records its issuance, in a log signed by a key the actors do not hold."},
		{"PCI DSS v4.0", "8.2.2", "Group, shared or generic accounts used only when necessary", []string{SectionIdentities, SectionSessions},
			"A shared target login (for example postgres) is reached only through an individual identity's certificate: every session names the individual, not just the login."},
		{"PCI DSS v4.0", "10.2", "Audit logs support the detection of anomalies and suspicious activity", []string{SectionSessions, SectionIdentities, SectionCustody},
			"Shows actions taken with administrative access, invalid access attempts (refused logins, tokens and requests), credentials issued and revoked, and the start and stop of the audit log's writer."},
		{"PCI DSS v4.0", "10.3", "Audit logs are protected from destruction and unauthorized modifications", []string{SectionCover, SectionCustody},
			"Verification detects any change, insertion, deletion or truncation against the signed checkpoints; every read of the journal (play, export, report) is itself recorded."},
		{"FFIEC IT Examination Handbook, Information Security", "II.C.7(b)", "User access program", []string{SectionIdentities, SectionGrants, SectionTimeline},
			"Shows that privileged access was granted per identity, time-bound and approved, with standing access listed for review and every grant's end proven by a journal leaf."},
	}
}
