"""SSH to ESXi hosts and guests (paramiko): host keys verified on every connection (pinned, trusted or refused),
timeouts, quoting, SFTP. No knowledge of what the commands mean."""
