# frozen_string_literal: true

require "spec_helper"

# Every example in examples/ must run.
RSpec.describe "examples/" do
  it "hello.ru says hello" do
    server = ServerProcess.new([File.join(ROOT, "examples", "hello.ru")])
    expect(http_get(server.port, "/").body).to eq("Hello World!")
  ensure
    server&.stop
  end

  it "mustache.ru renders its template and partial, escaping the query" do
    server = ServerProcess.new([File.join(ROOT, "examples", "mustache.ru")])
    body = http_get(server.port, "/?name=%3Cb%3Eyou%3C/b%3E").body
    expect(body).to include("<h1>Iodine::Mustache &amp; friends</h1>")
    expect(body).to include("<li>&lt;b&gt;you&lt;/b&gt; <small>from the query string</small></li>")
  ensure
    server&.stop
  end
end
