package channel

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"strings"
	"time"

	alertv1 "github.com/lodestar-cs/lodestar/proto/gen/go/lodestar/alert/v1"
)

// Email is a plain-text message.
type Email struct {
	Subject string
	Body    string
}

func emailMessage(d *alertv1.Delivery, now time.Time) Email {
	ev, a := d.GetEvent(), d.GetEvent().GetAlert()
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n%s\n\n", headline(ev), a.GetReason())
	for _, f := range facts(a, now) {
		fmt.Fprintf(&b, "%-9s %s\n", f.label+":", f.value)
	}
	if s := a.GetScoreSummary(); s != "" {
		fmt.Fprintf(&b, "\n%s\n", s)
	}
	if a.GetLink() != "" {
		fmt.Fprintf(&b, "\nOpen in Lodestar: %s\n", a.GetLink())
	}
	fmt.Fprintf(&b, "\nAlert %s, rule %s.\n", a.GetAlertId(), a.GetRuleId())
	return Email{Subject: "[Lodestar] " + headline(ev), Body: b.String()}
}

func emailDigest(dg *alertv1.DeliveryDigest) Email {
	var b strings.Builder
	n := len(dg.GetDeliveries())
	fmt.Fprintf(&b, "%d churn alerts were held back by your rate limit or daily page budget:\n\n", n)
	for _, d := range dg.GetDeliveries() {
		ev, a := d.GetEvent(), d.GetEvent().GetAlert()
		fmt.Fprintf(&b, "- %s\n  %s\n  Score %s", headline(ev), a.GetReason(), scoreText(a))
		if a.GetLink() != "" {
			fmt.Fprintf(&b, "  %s", a.GetLink())
		}
		if r := a.GetRankReason(); r != "" {
			fmt.Fprintf(&b, "\n  Why: %s", r)
		}
		b.WriteString("\n\n")
	}
	return Email{Subject: fmt.Sprintf("[Lodestar] Digest: %d churn alerts", n), Body: b.String()}
}

// mail sends an e-mail to the recipient and the channel's extra addresses.
func (s *Sender) mail(ctx context.Context, cfg *alertv1.EmailChannel, recipient *alertv1.Person, id string, m Email) error {
	if s.SMTP.Addr == "" {
		return &PermanentError{errors.New("no SMTP relay configured")}
	}
	var to []string
	if e := recipient.GetEmail(); e != "" {
		to = append(to, (&mail.Address{Name: recipient.GetName(), Address: e}).String())
	}
	to = append(to, cfg.GetExtraTo()...)
	if len(to) == 0 {
		return &PermanentError{errors.New("no e-mail address to send to")}
	}
	var rcpt, shown []string
	for _, t := range to {
		a, err := mail.ParseAddress(t)
		if err != nil {
			return &PermanentError{fmt.Errorf("address %q: %w", t, err)}
		}
		rcpt, shown = append(rcpt, a.Address), append(shown, a.String())
	}
	from, err := mail.ParseAddress(s.SMTP.From)
	if err != nil {
		return &PermanentError{fmt.Errorf("from address %q: %w", s.SMTP.From, err)}
	}
	msg, err := compose(from, shown, id, m, s.Now())
	if err != nil {
		return &PermanentError{err}
	}
	return s.smtpSend(ctx, from.Address, rcpt, msg)
}

// compose writes an RFC 5322 message: UTF-8 text, quoted-printable, with an
// encoded subject and a Message-ID derived from the delivery id.
func compose(from *mail.Address, to []string, id string, m Email, now time.Time) ([]byte, error) {
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("From", from.String())
	h("To", strings.Join(to, ", "))
	h("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	h("Date", now.Format(time.RFC1123Z))
	h("Message-ID", "<"+id+"@lodestar>")
	h("X-Lodestar-Delivery-Id", id)
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(strings.ReplaceAll(m.Body, "\n", "\r\n"))); err != nil {
		return nil, fmt.Errorf("encode body: %w", err)
	}
	if err := qp.Close(); err != nil {
		return nil, fmt.Errorf("encode body: %w", err)
	}
	return b.Bytes(), nil
}

// smtpSend is smtp.SendMail bounded by ctx: STARTTLS when the relay offers
// it, AUTH PLAIN when a username is configured. A 5xx answer is permanent.
func (s *Sender) smtpSend(ctx context.Context, from string, to []string, msg []byte) error {
	host, _, err := net.SplitHostPort(s.SMTP.Addr)
	if err != nil {
		return &PermanentError{fmt.Errorf("smtp address %q: %w", s.SMTP.Addr, err)}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.SMTP.Addr)
	if err != nil {
		return fmt.Errorf("dial smtp %s: %w", s.SMTP.Addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return smtpErr("greeting", err)
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}); err != nil {
			return smtpErr("starttls", err)
		}
	}
	if s.SMTP.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.SMTP.Username, s.SMTP.Password, host)); err != nil {
			return smtpErr("auth", err)
		}
	}
	if err := c.Mail(from); err != nil {
		return smtpErr("mail from", err)
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			return smtpErr("rcpt to "+r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return smtpErr("data", err)
	}
	if _, err := w.Write(msg); err != nil {
		return smtpErr("data", err)
	}
	if err := w.Close(); err != nil {
		return smtpErr("data", err)
	}
	return smtpErr("quit", c.Quit())
}

func smtpErr(step string, err error) error {
	if err == nil {
		return nil
	}
	err = fmt.Errorf("smtp %s: %w", step, err)
	var tp *textproto.Error
	if errors.As(err, &tp) && tp.Code >= 500 {
		return &PermanentError{err}
	}
	return err
}
