"""Notification service: tells each customer once how their order ended, through the channel
they chose (log, email over SMTP, webhook), and the operators about restocks."""
