package identity

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/jcmturner/gokrb5/v8/credentials"
	"github.com/jcmturner/gokrb5/v8/gssapi"
	"github.com/jcmturner/gokrb5/v8/iana/adtype"
	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/messages"
	"github.com/jcmturner/gokrb5/v8/pac"
	"github.com/jcmturner/gokrb5/v8/service"
	"github.com/jcmturner/gokrb5/v8/spnego"
	"github.com/jcmturner/gokrb5/v8/types"

	"github.com/opsgraph/ops/internal/config"
)

// Kerberos accepts SPNEGO ("HTTP Negotiate", RFC 4559) tickets for the
// service principal in a keytab. It is stateless: every request carries a
// complete Kerberos AP-REQ, so it works the same on every node.
type Kerberos struct {
	cfg     config.Kerberos
	kt      *keytab.Keytab
	ktPrinc *types.PrincipalName // nil: the key is chosen by the ticket's server name
	svc     *spnego.SPNEGO
	log     *slog.Logger
	krbLog  *log.Logger // gokrb5 logs through the standard library's logger
}

const (
	negotiate = "Negotiate"
	// maxNegotiateHeader bounds the work spent on one header. Active
	// Directory tickets with a large PAC reach 48-64 KiB (MaxTokenSize),
	// which is about 87 KiB of base64.
	maxNegotiateHeader = 96 << 10
	// gokrb5ContextCredentials is the context key under which
	// AcceptSecContext stores the verified client's *credentials.Credentials.
	// gokrb5 keeps the constant unexported; the end-to-end tests fail if
	// it ever changes.
	gokrb5ContextCredentials = "github.com/jcmturner/gokrb5/v8/ctxCredentials"
)

// errTokenPanic marks a token that made the decoder panic; the fuzz test
// looks for it, production answers 401 as for any other bad token.
var errTokenPanic = errors.New("negotiate token crashed the decoder")

// NewKerberos loads the service keytab named in cfg.
func NewKerberos(cfg config.Kerberos, logger *slog.Logger) (*Kerberos, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("provider", "kerberos")
	if cfg.Keytab == "" {
		return nil, errors.New("identity.kerberos.keytab: required")
	}
	kt, err := keytab.Load(cfg.Keytab)
	if err != nil {
		return nil, fmt.Errorf("identity.kerberos.keytab: load %s: %w", cfg.Keytab, err)
	}
	k := &Kerberos{cfg: cfg, kt: kt, log: logger, krbLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug)}
	opts := []func(*service.Settings){
		// gokrb5 calls Printf on this logger for PAC parts it cannot read;
		// a nil logger would panic there.
		service.Logger(k.krbLog),
		// gokrb5's PAC decoding insists on the Active Directory logon-info
		// buffer. MIT KDCs since 1.20 put a PAC in every ticket that has
		// only client info and signatures, so with decoding on gokrb5
		// refuses every MIT ticket ("PAC Info Buffers does not contain a
		// KerbValidationInfo"; seen with krb5kdc 1.20.1, and the MIT PAC
		// test checks it). logonInfo decodes the PAC instead, only when
		// group_sids is set, and takes a PAC without logon info as "no
		// groups".
		service.DecodePAC(false),
	}
	if cfg.Principal != "" {
		pn, _ := types.ParseSPNString(cfg.Principal)
		if !keytabHas(kt, pn) {
			return nil, fmt.Errorf("identity.kerberos.principal: keytab %s has no key for %s", cfg.Keytab, cfg.Principal)
		}
		k.ktPrinc = &pn
		opts = append(opts, service.KeytabPrincipal(cfg.Principal))
	}
	k.svc = spnego.SPNEGOService(kt, opts...)
	return k, nil
}

func keytabHas(kt *keytab.Keytab, pn types.PrincipalName) bool {
	for _, e := range kt.Entries {
		if slices.Equal(e.Principal.Components, pn.NameString) {
			return true
		}
	}
	return false
}

// Challenge asks the client for a Kerberos ticket. It adds rather than sets
// the header so that other schemes offered on the same 401 survive.
func (k *Kerberos) Challenge(w http.ResponseWriter) {
	w.Header().Add("WWW-Authenticate", negotiate)
}

// Verify checks the request's Negotiate token. It returns the client's
// identity and the base64 token for a "WWW-Authenticate: Negotiate <token>"
// header on the response (empty when there is none), ErrNoTicket when the
// request has no Negotiate token, or an error wrapping ErrInvalid.
func (k *Kerberos) Verify(r *http.Request) (id *Identity, respToken string, err error) {
	h := r.Header.Get("Authorization")
	scheme, b64, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, negotiate) {
		return nil, "", ErrNoTicket
	}
	// Tokens come from anyone on the network and gokrb5 trusts some of
	// their structure (AcceptSecContext indexes MechTypes[0] unchecked;
	// decodeNegotiate guards that one). Whatever else may panic must not
	// take the request down; the fuzz test fails on it all the same.
	defer func() {
		if p := recover(); p != nil {
			k.log.Error("negotiate token crashed the decoder", "panic", p, "remote", r.RemoteAddr)
			id, respToken, err = nil, "", fmt.Errorf("%w: %w", ErrInvalid, errTokenPanic)
		}
	}()
	id, err = k.verify(strings.TrimSpace(b64))
	if err != nil {
		k.log.Debug("negotiate refused", "remote", r.RemoteAddr, "err", err)
		return nil, "", err
	}
	k.log.Debug("negotiate accepted", "remote", r.RemoteAddr, "user", id.User)
	// gokrb5 accepts without building an AP-REP, so there is no response
	// token. gokrb5's own handler sends a fixed "accept-completed"
	// NegTokenResp instead; we do not, because a client that asked for
	// mutual authentication and checks the answer (requests-gssapi,
	// browsers via GSS-API) would find no AP-REP in it and fail, whereas
	// no token at all only means "not mutually authenticated". curl
	// ignores WWW-Authenticate on a 200 either way.
	return id, "", nil
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("negotiate: %s: %w", fmt.Sprintf(format, a...), ErrInvalid)
}

func (k *Kerberos) verify(b64 string) (*Identity, error) {
	if b64 == "" {
		return nil, invalid("empty token")
	}
	if len(b64) > maxNegotiateHeader {
		return nil, invalid("token of %d bytes is too long", len(b64))
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, invalid("base64: %v", err)
	}
	st, mech, err := decodeNegotiate(raw)
	if err != nil {
		return nil, invalid("%v", err)
	}
	ok, ctx, status := k.svc.AcceptSecContext(st)
	// A KRB-ERROR token comes back ok with StatusUnavailable, so only
	// StatusComplete counts.
	if !ok || status.Code != gssapi.StatusComplete {
		return nil, invalid("%v", status)
	}
	creds, _ := ctx.Value(gokrb5ContextCredentials).(*credentials.Credentials)
	if creds == nil {
		return nil, invalid("gokrb5 returned no credentials")
	}

	// gokrb5 names the client from the authenticator, which the client
	// writes itself; only the client name is compared with the ticket,
	// not the realm. Decrypt the ticket again (AES, microseconds) to take
	// the KDC's word for both, and to read the PAC tolerantly.
	var tok spnego.KRB5Token
	if err := tok.Unmarshal(mech); err != nil || !tok.IsAPReq() {
		return nil, invalid("mech token is not an AP-REQ")
	}
	tkt := &tok.APReq.Ticket
	if err := tkt.DecryptEncPart(k.kt, k.ktPrinc); err != nil {
		return nil, invalid("decrypt ticket: %v", err)
	}
	enc := tkt.DecryptedEncPart
	if !enc.CName.Equal(creds.CName()) || enc.CRealm != creds.Realm() {
		return nil, invalid("authenticator names %s@%s, ticket %s@%s",
			creds.CName().PrincipalNameString(), creds.Realm(), enc.CName.PrincipalNameString(), enc.CRealm)
	}

	user := enc.CName.PrincipalNameString()
	if !k.cfg.StripRealm {
		user += "@" + enc.CRealm
	}
	id := &Identity{User: user, Name: creds.DisplayName(), Provider: "kerberos", Groups: []string{}}
	if len(k.cfg.GroupSIDs) > 0 {
		info, err := k.logonInfo(tkt)
		if err != nil {
			return nil, invalid("PAC: %v", err)
		}
		if info != nil {
			id.Groups = groupsFromSIDs(info.GetGroupMembershipSIDs(), k.cfg.GroupSIDs)
			if info.FullName.Value != "" {
				id.Name = info.FullName.Value
			}
		}
	}
	if id.Name == "" {
		id.Name = id.User
	}
	return id, nil
}

// decodeNegotiate turns the decoded header into the SPNEGO token that
// AcceptSecContext wants and the raw Kerberos mech token inside it.
func decodeNegotiate(raw []byte) (*spnego.SPNEGOToken, []byte, error) {
	var st spnego.SPNEGOToken
	if err := st.Unmarshal(raw); err != nil {
		// Some clients send a bare Kerberos GSS token instead of SPNEGO;
		// gokrb5's own handler accepts those the same way.
		var k5 spnego.KRB5Token
		if k5.Unmarshal(raw) != nil {
			return nil, nil, fmt.Errorf("not a SPNEGO token: %v", err)
		}
		st = spnego.SPNEGOToken{Init: true}
		st.NegTokenInit.MechTypes = append(st.NegTokenInit.MechTypes, k5.OID)
		st.NegTokenInit.MechTokenBytes = raw
	}
	switch {
	case st.Init:
		// AcceptSecContext indexes MechTypes[0] without a length check.
		if len(st.NegTokenInit.MechTypes) == 0 {
			return nil, nil, errors.New("NegTokenInit lists no mechanisms")
		}
		if len(st.NegTokenInit.MechTokenBytes) == 0 {
			return nil, nil, errors.New("NegTokenInit carries no Kerberos token")
		}
		return &st, st.NegTokenInit.MechTokenBytes, nil
	case st.Resp:
		if len(st.NegTokenResp.ResponseToken) == 0 {
			return nil, nil, errors.New("NegTokenResp carries no Kerberos token")
		}
		return &st, st.NegTokenResp.ResponseToken, nil
	}
	return nil, nil, errors.New("empty SPNEGO token")
}

// logonInfo returns the Active Directory logon info from the ticket's PAC,
// or nil when the ticket has no PAC or, as MIT KDCs issue it, a PAC without
// logon info. A PAC that has logon info must verify against the service key.
func (k *Kerberos) logonInfo(tkt *messages.Ticket) (*pac.KerbValidationInfo, error) {
	for _, ad := range tkt.DecryptedEncPart.AuthorizationData {
		if ad.ADType != adtype.ADIfRelevant {
			continue
		}
		var inner types.AuthorizationData
		if err := inner.Unmarshal(ad.ADData); err != nil {
			continue // not ours to judge: AD-IF-RELEVANT may be ignored
		}
		for _, e := range inner {
			if e.ADType != adtype.ADWin2KPAC {
				continue
			}
			sname := tkt.SName
			if k.ktPrinc != nil {
				sname = *k.ktPrinc
			}
			key, _, err := k.kt.GetEncryptionKey(sname, tkt.Realm, tkt.EncPart.KVNO, tkt.EncPart.EType)
			if err != nil {
				return nil, err
			}
			return pacLogonInfo(e.ADData, key, k.krbLog)
		}
	}
	return nil, nil
}

// pacLogonInfo decodes a PAC, returning nil when it has no logon info.
func pacLogonInfo(b []byte, key types.EncryptionKey, l *log.Logger) (*pac.KerbValidationInfo, error) {
	// gokrb5 allocates the buffer table from the count before reading it.
	if len(b) < 8 || uint64(binary.LittleEndian.Uint32(b))*16 > uint64(len(b)) {
		return nil, errors.New("PAC buffer count exceeds its size")
	}
	var p pac.PACType
	if err := p.Unmarshal(b); err != nil {
		return nil, err
	}
	const logonInfoType = 1 // PAC_LOGON_INFO, MS-PAC 2.4
	if !slices.ContainsFunc(p.Buffers, func(b pac.InfoBuffer) bool { return b.ULType == logonInfoType }) {
		return nil, nil
	}
	for _, b := range p.Buffers {
		if b.Offset > uint64(len(p.Data)) || uint64(b.CBBufferSize) > uint64(len(p.Data))-b.Offset {
			return nil, fmt.Errorf("PAC buffer type %d runs past the end", b.ULType)
		}
	}
	if err := p.ProcessPACInfoBuffers(key, l); err != nil {
		return nil, err
	}
	return p.KerbValidationInfo, nil
}

// groupsFromSIDs maps group SIDs to configured group names, dropping SIDs
// that are not configured, sorted and without duplicates (two SIDs may map
// to one name).
func groupsFromSIDs(sids []string, m map[string]string) []string {
	groups := []string{}
	for _, s := range sids {
		if g, ok := m[s]; ok && g != "" {
			groups = append(groups, g)
		}
	}
	slices.Sort(groups)
	return slices.Compact(groups)
}
