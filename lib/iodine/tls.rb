# frozen_string_literal: true

module Iodine
  # A TLS context for `Iodine.listen(tls:)` and `Iodine.connect(tls:)` (rustls: TLS 1.2 and
  # 1.3 only).
  #
  #   tls = Iodine::TLS.new("example.com", "cert.pem", "key.pem")
  #   tls.use_certificate(server_name: "other.example", certificate: "o.pem", private_key: "o.key")
  #   tls.trust("clients-ca.pem")   # a server asks clients for a certificate from this CA
  #   Iodine.listen(service: :http, port: 443, handler: app, tls: tls)
  #
  # Certificates are PEM files, read when given (a missing file, a wrong password or a key
  # that doesn't match its certificate raise ArgumentError) and again on `reload` or SIGHUP.
  class TLS
    # TLS is always built in (rustls): true.
    SUPPORTED = true

    # `new` with arguments calls `use_certificate` with them.
    def initialize(*args, **named)
      @protocols = {}
      use_certificate(*args, **named) unless args.empty? && named.empty?
    end

    # Adds a certificate, chosen when a client asks for `server_name` (SNI); the first one
    # added is the default. Positional (server_name, certificate, private_key, password) or
    # named. With a server name but no certificate or key file, a self-signed certificate is
    # made for that name. An encrypted key (PKCS#8) needs its `password`. Returns self.
    def use_certificate(*args, server_name: nil, certificate: nil, private_key: nil, password: nil)
      raise ArgumentError, "use_certificate takes at most 4 arguments, got #{args.size}" if args.size > 4

      name, cert, key, pass = args
      name = server_name if name.nil?
      cert = certificate if cert.nil?
      key = private_key if key.nil?
      pass = password if pass.nil?
      __use_certificate(text(name), path(cert), path(key), text(pass))
      self
    end

    # Trusts the certificates in the PEM file `pem`: a server then requires every client to
    # present a certificate they signed (mutual TLS); a client checks the server against them
    # instead of the system's roots. Returns self.
    def trust(pem)
      __trust(path(pem) || raise(ArgumentError, "trust needs a PEM file"))
      self
    end

    # Offers `name` in ALPN. On a raw listener, a connection that agreed on `name` gets the
    # handler the block returns (nil, true or false close it); the first protocol added is
    # used when the client names none of them. Returns self.
    def on_protocol(name, &handler)
      raise ArgumentError, "on_protocol needs a block that returns the connection's handler" unless handler

      name = name.to_s
      __add_protocol(name)
      (@protocols ||= {})[name] = handler
      self
    end

    # Reads the certificate files again (new handshakes use them; open connections keep
    # theirs). When a file fails to load, every old certificate stays and one error line is
    # logged. Returns self.
    def reload
      __reload
      self
    end

    # [[name, block], ...] of `on_protocol`, in order (for the listeners).
    def protocol_handlers
      __protocols.map { |name| [name, (@protocols || {})[name]] }
    end

    private

    def text(value)
      value.nil? ? nil : value.to_s
    end

    def path(value)
      return nil if value.nil?

      value = value.to_path if value.respond_to?(:to_path)
      File.expand_path(value.to_s)
    end
  end
end
