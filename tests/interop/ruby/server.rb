# A relying party on the webauthn Ruby gem (Debian's ruby-webauthn) with the gem's own defaults, for
# keyctl's interop tests; the HTTP convention shared by all interop apps is described in
# tests/interop/simplewebauthn/server.mjs. Usage: ruby server.rb  (prints "listening PORT")
require "json"
require "securerandom"
require "webauthn"
require "webrick"

RP_ID = "localhost"
USERS = {} # username -> {id:, credentials: [{id:, public_key:, sign_count:}]}
SESSIONS = {} # sid -> {challenge:, username:, user_verification:}
$variant = {}

server = WEBrick::HTTPServer.new(
  BindAddress: "127.0.0.1", Port: 0, Logger: WEBrick::Log.new(File::NULL), AccessLog: []
)
PORT = server.config[:Port]

WebAuthn.configure do |config|
  config.origin = "http://localhost:#{PORT}"
  config.rp_name = "webauthn-ruby interop"
  config.rp_id = RP_ID
end

def flags(credential)
  data = credential.response.authenticator_data
  { verified: true, counter: credential.sign_count, userVerified: data.user_verified?,
    # webauthn-ruby 2.5 reads neither the BE nor the BS flag (bits 3 and 4 are "reserved" to it)
    backupEligible: nil, backupState: nil }
end

def register_options(body, session)
  name = body["username"]
  account = (USERS[name] ||= { id: WebAuthn.generate_user_id, credentials: [] })
  selection = { residentKey: body["residentKey"], userVerification: body["userVerification"] }.compact
  arguments = { user: { id: account[:id], name: name }, exclude: account[:credentials].map { |c| c[:id] } }
  arguments[:authenticator_selection] = selection unless selection.empty?
  arguments[:attestation] = $variant["attestation"] if $variant["attestation"]
  arguments[:algs] = $variant["algorithms"].map { |a| COSE::Algorithm.find(a).name } if $variant["algorithms"]
  arguments[:extensions] = $variant["extensions"] if $variant["extensions"]
  arguments[:exclude] = [] if $variant["exclude"] == false
  options = WebAuthn::Credential.options_for_create(**arguments)
  session.replace(challenge: options.challenge, username: name,
                  user_verification: body["userVerification"] == "required")
  [200, options.as_json]
end

def register_verify(body, session)
  credential = WebAuthn::Credential.from_create(body)
  credential.verify(session.delete(:challenge), user_verification: session[:user_verification])
  USERS[session[:username]][:credentials] << {
    id: credential.id, public_key: credential.public_key, sign_count: credential.sign_count
  }
  attestation = credential.response.attestation_object
  [200, flags(credential).merge(
    username: session[:username], fmt: attestation.attestation_statement.class.name.split("::").last.downcase,
    attestationChecked: true, attestationType: credential.response.attestation_type, aaguid: attestation.authenticator_data.aaguid,
    credProps: (body["clientExtensionResults"] || {})["credProps"]
  )]
end

def login_options(body, session)
  allow = nil
  if body.key?("username")
    account = USERS[body["username"]]
    return [404, { error: "User #{body['username']} is not registered" }] unless account
    allow = account[:credentials].map { |c| c[:id] }
  end
  arguments = { allow: allow }.compact
  arguments[:user_verification] = body["userVerification"] if body["userVerification"]
  options = WebAuthn::Credential.options_for_get(**arguments)
  session.replace(challenge: options.challenge, user_verification: body["userVerification"] == "required")
  [200, options.as_json]
end

def login_verify(body, session)
  credential = WebAuthn::Credential.from_get(body)
  USERS.each do |name, account|
    stored = account[:credentials].find { |c| c[:id] == credential.id }
    next unless stored
    credential.verify(session.delete(:challenge), public_key: stored[:public_key],
                      sign_count: stored[:sign_count], user_verification: session[:user_verification])
    stored[:sign_count] = credential.sign_count
    return [200, flags(credential).merge(username: name)]
  end
  [400, { error: "Unknown credential" }]
end

ROUTES = {
  "/register/options" => method(:register_options), "/register/verify" => method(:register_verify),
  "/login/options" => method(:login_options), "/login/verify" => method(:login_verify),
  "/control" => lambda do |body, _session|
    $variant = body["variant"] || {}
    [200, { ok: true, unsupported: $variant.keys & ["hint"] }] # webauthn-ruby 2.5 has no hints option
  end
}

ROUTES.each do |path, handler|
  server.mount_proc(path) do |request, response|
    sid = request.cookies.find { |c| c.name == "sid" }&.value
    sid = SecureRandom.hex(16) unless sid && SESSIONS.key?(sid)
    SESSIONS[sid] ||= {}
    begin
      status, answer = handler.call(JSON.parse(request.body || "{}"), SESSIONS[sid])
    rescue StandardError => error
      status, answer = 400, { error: "#{error.class.name}: #{error.message}" }
    end
    response.status = status
    response["Content-Type"] = "application/json"
    response["Set-Cookie"] = "sid=#{sid}; HttpOnly; Path=/"
    response.body = JSON.generate(answer)
  end
end

trap("TERM") { server.shutdown }
server.config[:StartCallback] = -> { puts "listening #{PORT}"; $stdout.flush }
server.start
