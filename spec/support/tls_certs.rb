# frozen_string_literal: true

require "fileutils"
require "open3"
require "tmpdir"

# Certificates for the TLS specs, made with the `openssl` command line in a temporary folder
# (never checked in), once per process and removed when it ends. `TlsCerts.paths` answers a
# Paths struct of PEM file paths:
#
#   ca / ca_key                the root CA (EC P-256) that signs the rest
#   server_cert / server_key   CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1 (RSA 2048,
#                              key as PKCS#8 "BEGIN PRIVATE KEY")
#   server_key_pkcs1           the same key as PKCS#1 ("BEGIN RSA PRIVATE KEY")
#   server_key_encrypted       the same key as encrypted PKCS#8 (PBES2, AES-256-CBC), PASSWORD
#   other_cert / other_key     CN=other.test, SAN DNS:other.test (EC P-256, key as SEC1
#                              "BEGIN EC PRIVATE KEY"), for SNI and reload
#   chain_cert / chain_key     CN=localhost (same SANs) signed by an intermediate CA; chain_cert
#                              holds the leaf then the intermediate (a "fullchain.pem")
#   client_cert / client_key   CN=iodine-spec-client, clientAuth, signed by the CA
#   rogue_ca                   a second, unrelated CA
#   rogue_client_cert / _key   CN=rogue-client, clientAuth, signed by the rogue CA
#   mismatch_key               an RSA key that belongs to no certificate (server_cert + this
#                              key is a cert/key pair that doesn't match)
module TlsCerts
  PASSWORD = "iodine-spec-pass"

  Paths = Struct.new(:dir, :ca, :ca_key, :server_cert, :server_key, :server_key_pkcs1, :server_key_encrypted,
                     :other_cert, :other_key, :intermediate, :chain_cert, :chain_key, :client_cert, :client_key,
                     :rogue_ca, :rogue_client_cert, :rogue_client_key, :mismatch_key, :password,
                     keyword_init: true)

  # The extensions of each kind of certificate (openssl x509 -extfile … -extensions NAME).
  CONFIG = <<~CNF
    [req]
    distinguished_name = dn
    prompt = no

    [dn]

    [root_ca]
    basicConstraints = critical, CA:TRUE
    keyUsage = critical, keyCertSign, cRLSign
    subjectKeyIdentifier = hash

    [intermediate_ca]
    basicConstraints = critical, CA:TRUE, pathlen:0
    keyUsage = critical, keyCertSign, cRLSign
    subjectKeyIdentifier = hash
    authorityKeyIdentifier = keyid

    [server_localhost]
    basicConstraints = critical, CA:FALSE
    keyUsage = critical, digitalSignature, keyEncipherment
    extendedKeyUsage = serverAuth
    subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
    subjectKeyIdentifier = hash
    authorityKeyIdentifier = keyid

    [server_other]
    basicConstraints = critical, CA:FALSE
    keyUsage = critical, digitalSignature
    extendedKeyUsage = serverAuth
    subjectAltName = DNS:other.test
    subjectKeyIdentifier = hash
    authorityKeyIdentifier = keyid

    [client]
    basicConstraints = critical, CA:FALSE
    keyUsage = critical, digitalSignature, keyEncipherment
    extendedKeyUsage = clientAuth
    subjectKeyIdentifier = hash
    authorityKeyIdentifier = keyid
  CNF

  @lock = Mutex.new

  module_function

  # The certificates, made on first use.
  def paths
    @lock.synchronize { @paths ||= make }
  end

  # Whether `openssl` runs here (every TLS spec needs it for its certificates).
  def openssl?
    _out, _err, status = Open3.capture3("openssl", "version")
    status.success?
  rescue SystemCallError
    false
  end

  def make
    dir = Dir.mktmpdir("iodine-tls-certs")
    owner = Process.pid
    at_exit { FileUtils.rm_rf(dir) if Process.pid == owner }
    File.write(File.join(dir, "openssl.cnf"), CONFIG)
    f = ->(name) { File.join(dir, name) }

    root_ca(dir, "ca", "Iodine Spec Root CA")
    root_ca(dir, "rogue_ca", "Unrelated Rogue CA")

    # The intermediate CA of the chain.
    key(f["intermediate.key"], :ec)
    sign(dir, "intermediate", "/CN=Iodine Spec Intermediate CA", "intermediate_ca", ca: "ca")

    key(f["server.key"], :rsa)
    sign(dir, "server", "/CN=localhost", "server_localhost", ca: "ca")
    openssl("pkey", "-in", f["server.key"], "-traditional", "-out", f["server.pkcs1.key"])
    openssl("pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", f["server.key"], "-out", f["server.enc.key"],
            "-passout", "pass:#{PASSWORD}")

    key(f["other.p8.key"], :ec)
    openssl("ec", "-in", f["other.p8.key"], "-out", f["other.key"]) # SEC1: BEGIN EC PRIVATE KEY
    sign(dir, "other", "/CN=other.test", "server_other", ca: "ca", key_file: "other.p8.key")

    key(f["chain.key"], :ec)
    sign(dir, "chain_leaf", "/CN=localhost", "server_localhost", ca: "intermediate", key_file: "chain.key")
    File.write(f["chain.pem"], File.read(f["chain_leaf.pem"]) + File.read(f["intermediate.pem"]))

    key(f["client.key"], :rsa)
    sign(dir, "client", "/CN=iodine-spec-client", "client", ca: "ca")
    key(f["rogue_client.key"], :ec)
    sign(dir, "rogue_client", "/CN=rogue-client", "client", ca: "rogue_ca")

    key(f["mismatch.key"], :rsa)

    Paths.new(
      dir: dir, ca: f["ca.pem"], ca_key: f["ca.key"],
      server_cert: f["server.pem"], server_key: f["server.key"], server_key_pkcs1: f["server.pkcs1.key"],
      server_key_encrypted: f["server.enc.key"], other_cert: f["other.pem"], other_key: f["other.key"],
      intermediate: f["intermediate.pem"], chain_cert: f["chain.pem"], chain_key: f["chain.key"],
      client_cert: f["client.pem"], client_key: f["client.key"], rogue_ca: f["rogue_ca.pem"],
      rogue_client_cert: f["rogue_client.pem"], rogue_client_key: f["rogue_client.key"],
      mismatch_key: f["mismatch.key"], password: PASSWORD
    )
  end

  # A fresh private key (PKCS#8 PEM): EC P-256 or RSA 2048.
  def key(path, type)
    if type == :ec
      openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    else
      openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path)
    end
  end

  # A self-signed CA: DIR/NAME.key and DIR/NAME.pem.
  def root_ca(dir, name, common_name)
    key(File.join(dir, "#{name}.key"), :ec)
    openssl("req", "-x509", "-new", "-key", File.join(dir, "#{name}.key"), "-subj", "/CN=#{common_name}",
            "-days", "7", "-sha256", "-config", File.join(dir, "openssl.cnf"), "-extensions", "root_ca",
            "-out", File.join(dir, "#{name}.pem"))
  end

  # DIR/NAME.pem for the key DIR/KEY_FILE (default NAME.key), signed by the CA DIR/CA.pem with
  # the extensions of section `extensions`.
  def sign(dir, name, subject, extensions, ca:, key_file: "#{name}.key")
    csr = File.join(dir, "#{name}.csr")
    openssl("req", "-new", "-key", File.join(dir, key_file), "-subj", subject, "-config", File.join(dir, "openssl.cnf"),
            "-out", csr)
    openssl("x509", "-req", "-in", csr, "-CA", File.join(dir, "#{ca}.pem"), "-CAkey", File.join(dir, "#{ca}.key"),
            "-set_serial", "0x#{Random.new.bytes(8).unpack1('H*')}", "-days", "7", "-sha256",
            "-extfile", File.join(dir, "openssl.cnf"), "-extensions", extensions, "-out", File.join(dir, "#{name}.pem"))
    File.delete(csr)
  end

  def openssl(*args)
    out, err, status = Open3.capture3("openssl", *args)
    raise "openssl #{args.join(' ')} failed (#{status}):\n#{out}#{err}" unless status.success?

    out
  end
end
