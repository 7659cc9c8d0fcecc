package evidence

// Section identifiers: the HTML element ids of the report's sections, in
// reading order, which the appendix refers to.
const (
	SectionCover      = "cover"
	SectionSummary    = "summary"
	SectionIdentities = "identities"
	SectionGrants     = "grants"
	SectionPrivilege  = "least-privilege"
	SectionSessions   = "sessions"
	SectionTimeline   = "timeline"
	SectionCustody    = "custody"
	SectionReview     = "review"
	SectionControls   = "controls"
)

// Sections lists every section id with its heading, in reading order.
var Sections = []struct{ ID, Title string }{
	{SectionCover, "1. Cover and integrity statement"},
	{SectionSummary, "2. Summary"},
	{SectionIdentities, "3. Privileged identity inventory"},
	{SectionGrants, "4. Grants and approvals"},
	{SectionPrivilege, "5. Least privilege: the policy in force"},
	{SectionSessions, "6. Session activity"},
	{SectionTimeline, "7. Timeline of access"},
	{SectionCustody, "8. Integrity and custody"},
	{SectionReview, "9. Review and sign-off"},
	{SectionControls, "10. Appendix: controls"},
}

// Controls is the appendix: which section answers which control. The
// sentences say what the report shows, not that a control is met: that
// is the examiner's judgement.
func Controls() []Control {
	return []Control{
		{"NIST SP 800-53 Rev. 5", "AC-2", "Account Management", []string{SectionIdentities, SectionGrants},
			"Lists every identity that held privileged access in the period, with its identity provider, sponsor and certificates, and every grant with its requester, approvers, window and how it ended."},
		{"NIST SP 800-53 Rev. 5", "AC-5", "Separation of Duties", []string{SectionSummary, SectionGrants},
			"Every approval is checked against the requester: an approver who is the requester's sponsor, an agent approving its own sponsor's request, or two agents of one sponsor are listed as segregation-of-duties exceptions; the policy can forbid them (approval exclude_sponsor)."},
		{"NIST SP 800-53 Rev. 5", "AC-6", "Least Privilege", []string{SectionPrivilege, SectionGrants},
			"Shows the policy text in force during the period as its loads recorded it, each role's reach (who, which targets as which logins, which commands, standing or by approved grant), what each reload changed, and each grant's concrete scope."},
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
		{"PCI DSS v4.0", "8.2.1", "All users are assigned a unique ID", []string{SectionIdentities, SectionCustody},
			"Every session and certificate names one identity from an identity provider; operator actions through the admin socket name the person (an OpenID Connect token, or an OS account the configuration maps to an identity), and those that name only an OS account are listed as unverified-operator exceptions. Identities from a development or non-HTTPS provider are flagged on the cover."},
		{"PCI DSS v4.0", "8.2.2", "Group, shared or generic accounts used only when necessary", []string{SectionIdentities, SectionSessions},
			"A shared target login (for example postgres) is reached only through an individual identity's certificate: every session names the individual, not just the login."},
		{"PCI DSS v4.0", "10.2.1.3", "All access to audit logs is logged", []string{SectionCustody},
			"Lists the journal.accessed records: the plays, exports, shows, searches, verifications and reports made with bastion. While bastion serve runs, it records each read on the reader's behalf, naming the account the kernel reports for the reader's process and, when given, the reader's verified identity; a journal no writer holds is recorded by the reader. Not recorded: reads with --unrecorded (warned about); a verification of a journal no writer holds that its reader cannot write (a copy checked offline with the public key alone); listings (sessions list) and checks of a report's signature; and any read of the file without bastion by an account its permissions (docs/operations.md) let in."},
		{"PCI DSS v4.0", "10.2", "Audit logs support the detection of anomalies and suspicious activity", []string{SectionSessions, SectionIdentities, SectionCustody},
			"Shows actions taken with administrative access, invalid access attempts (refused logins, tokens and requests), credentials issued and revoked, and the start and stop of the audit log's writer."},
		{"PCI DSS v4.0", "10.3", "Audit logs are protected from destruction and unauthorized modifications", []string{SectionCover, SectionCustody},
			"Verification detects any change, insertion, deletion or truncation against the signed checkpoints; with a checkpoint kept outside the bastion's host (--checkpoint), also a rollback or a wholesale rewrite by whoever holds the host and its key. The cover states which anchor the verdict rests on. Reads made with bastion are recorded (see 10.2.1.3 for what is not)."},
		{"PCI DSS v4.0", "10.5.1", "Audit log history is retained for at least 12 months", []string{SectionCustody},
			"States the journal's oldest record, its size and its retention: bastion deletes no record."},
		{"FFIEC IT Examination Handbook, Information Security", "II.C.7(b)", "User access program", []string{SectionIdentities, SectionGrants, SectionTimeline},
			"Shows that privileged access was granted per identity, time-bound and approved, with standing access listed for review and every grant's end proven by a journal leaf."},
	}
}
